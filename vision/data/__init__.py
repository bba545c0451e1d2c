"""Data for SeqPar models: image files and labels, the one eval pipeline, ImageFolder datasets, the photo split.

``images``: the image suffixes, the labelled-image lister and the image loader; ``transforms``: the
eval transform from a model's data config and the training augmentation; ``folder``: ImageFolder
datasets, class sets and the resumable sampler; ``photos``: the build / held-out split;
``synthetic``: a procedural 10-class image set; ``imagenet``: ImageNet-1k ids and names.
"""

from .images import IMAGE_SUFFIXES, LabelledImage, image_files, list_labelled_images, load_rgb
from .transforms import eval_transform, train_transform

__all__ = ["IMAGE_SUFFIXES", "LabelledImage", "eval_transform", "image_files", "list_labelled_images", "load_rgb",
           "train_transform"]
