"""Data: annotation readers, the WIDER FACE validation ground truth, identity folders, verification pairs, SCRFD
training augmentation (sample redistribution), dataset."""
from .augment import CROP_CHOICES_BASELINE, CROP_CHOICES_SCRFD, AugmentConfig, Targets, augment, augment_targets
from .dataset import FaceDataset, collate, image_size, training_faces
from .pairs import Pairs, load_pairs, read_lfw_pairs, read_pairs_file
from .identities import identity_folder
from .wider_gt import SETTINGS, WiderGroundTruth, find_val_images, load_ground_truth, present_images
from .readers import (ImageFaces, load_training_data, load_wider_split, read_annotations, read_jsonl,
                      read_retinaface_labels, read_wider_bbx_gt)

__all__ = [
    "SETTINGS", "WiderGroundTruth", "find_val_images", "identity_folder", "load_ground_truth", "present_images",
    "CROP_CHOICES_BASELINE", "CROP_CHOICES_SCRFD", "AugmentConfig", "FaceDataset", "ImageFaces", "Pairs", "Targets",
    "augment", "augment_targets", "collate", "image_size", "load_pairs", "load_training_data", "load_wider_split",
    "read_annotations", "read_jsonl", "read_lfw_pairs", "read_pairs_file", "read_retinaface_labels", "read_wider_bbx_gt", "training_faces",
]
