"""Full-size model parts shared by the benchmark scripts (random weights: compute does not depend on
weight values)."""


def sd_vae(sample_size: int):
    """The Stable Diffusion KL-f8 VAE architecture (SD1.x, InstructPix2Pix, ModelScope)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=sample_size,
    )
