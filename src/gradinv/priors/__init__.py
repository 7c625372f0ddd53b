"""Generative image priors: generators, loading, and training them."""
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .prior import Prior, load_generator, load_prior, save_generator
from .projection import project

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "Prior", "load_generator", "load_prior",
           "project", "save_generator"]
