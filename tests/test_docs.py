"""The shared parameter descriptions fill numpydoc sections."""

import pytest

from niclip_ray._docs import docdict, fill_doc


def test_fill_doc_indents_entries_in_place():
    @fill_doc
    def f(atlas_dir=None):
        """Do something.

        Parameters
        ----------
        %(atlas_dir)s
        """

    lines = f.__doc__.splitlines()
    start = lines.index("        atlas_dir : path, optional")
    assert lines[start + 1].startswith("            nilearn data directory")
    assert "%(" not in f.__doc__


def test_unknown_entries_fail_at_decoration():
    with pytest.raises(KeyError):

        @fill_doc
        def g():
            """%(no_such_parameter)s"""


def test_every_entry_names_its_parameter():
    for key, text in docdict.items():
        assert " : " in text.splitlines()[0], key
