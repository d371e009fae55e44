"""Image-quality metrics, computed as the LaMa paper computed them."""
