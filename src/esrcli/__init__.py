"""esr: real-world blind image super-resolution in the ESRGAN / Real-ESRGAN tradition."""

__version__ = "0.1.0"
