"""Images and masks on disk, training data sets, and augmentation."""
