"""LaMa inpainting: Fast Fourier Convolution generator, safe weight loading, inference."""
