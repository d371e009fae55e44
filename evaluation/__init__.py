"""Evaluation suite: the LaMa paper protocol (masks, splits, FID/LPIPS/SSIM/PSNR, reports)."""
