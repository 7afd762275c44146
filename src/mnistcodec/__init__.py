"""mnistcodec: learned lossy compression of MNIST-style digits.

An analysis transform maps a 28x28 digit to a latent vector y, y is quantised
and entropy coded under a learned prior into a real bit string, and a
synthesis transform maps the decoded latents back to pixels (Ballé, Laparra &
Simoncelli, "End-to-end Optimized Image Compression", ICLR 2017).
"""

__version__ = "0.1.0"
