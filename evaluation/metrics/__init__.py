"""Image-quality metrics, computed as the LaMa paper computed them (FID, LPIPS, SSIM, PSNR)."""

from .ssim import psnr, ssim

__all__ = ["psnr", "ssim"]
