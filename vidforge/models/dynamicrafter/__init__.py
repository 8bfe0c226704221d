"""DynamiCrafter (Xing et al. 2023, github Doubiiu/DynamiCrafter): release configs, the network
(video UNet, Resampler, open_clip towers, VAE), checkpoint conversion, loading and conditioning.

Split so that nothing imports in a circle: ``config`` <- ``network`` <- ``convert`` <- ``load``.
"""
