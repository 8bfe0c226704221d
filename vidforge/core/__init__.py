"""The shared pipeline core: device and dtype, attention backend, video I/O, models, VAE chunking,
optical flow and progress."""
