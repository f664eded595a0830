"""Datasets and LightningDataModules.

Modules, one job each:
- `errors`: `DatasetError`, the exception for problems a user can fix (`BadImageError`: one file).
- `images`: finding image files by extension, and decoding them to 8-bit RGB (16-bit scaling,
  transparency on white), for every folder dataset and the guide command.
- `checks`: the size and AB-shape rules an image file must meet.
- `notices`: warnings about a file, once per process.
- `shapes`: procedural objects (random shape specs, their masks and outlines).
- `appearance`: the appearance palette, painting and classifying appearances.
- `synthetic`: the embedded synthetic paired and unpaired datasets.
- `transforms`: joint A/B transforms for paired images (identical crop and flip).
- `paired`: the pix2pix single-file "AB" folder dataset.
- `unpaired`: CycleGAN-style unpaired folders (monet2photo, GTA5/Cityscapes, any two folders, colorization).
- `layouts`: those on-disk layouts as objects that `datamodules.UnpairedDataModule` takes.
- `scan`: the setup scan of file headers, cached per dataset folder.
- `screening`: a folder datamodule's bad-file options (scan, on_bad_image, min_image_size).
- `skipping`: `on_bad_image=skip`: replacing items that fail to load, `skipped_images.txt`.
- `resumable`: the training sampler and loader that resume in the middle of an epoch.
- `datamodules`: LightningDataModules over those datasets.
- `batches`: the first inputs of a loader as one batch (sample grids).
- `download`: `python -m bicyclegan_pl.data.download NAME --root DIR`.

Nothing is imported here so that `python -m bicyclegan_pl.data.download` stays light;
import from the modules (`bicyclegan_pl.data.datamodules.SyntheticPairedDataModule`).
"""
