import pickle

import numpy as np
import pytest

from dlsets import OptionError
from dlsets.data.dataset import Dataset, Split


def _split(n):
    return Split(np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2), np.arange(n, dtype=np.uint8))


def test_split_unpacks_to_images_and_labels_and_has_no_masks_by_default():
    s = _split(3)
    x, y = s
    assert x is s.images and y is s.labels and s.masks is None and len(s) == 3


def test_extra_splits_by_name_and_attribute_and_in_errors():
    val = _split(1)
    ds = Dataset("d", _split(3), _split(2), ("a", "b"), {}, extra={"val": val})
    assert ds["val"] is val and ds.val is val
    assert ds.split_names == ("train", "test", "val")
    assert "val=" in repr(ds)
    with pytest.raises(OptionError, match=r"\['train', 'test', 'val'\]"):
        ds["unlabeled"]
    with pytest.raises(AttributeError):
        getattr(ds, "unlabeled")  # noqa: B009
    back = pickle.loads(pickle.dumps(ds))
    assert back.val.labels.tolist() == [0]
