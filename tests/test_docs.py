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


def test_every_placeholder_in_the_package_has_an_entry_and_is_filled():
    import importlib
    import re
    from pathlib import Path

    import niclip_ray

    root = Path(niclip_ray.__file__).parent
    for path in sorted(root.rglob("*.py")):
        names = re.findall(r"^\s+%\((\w+)\)s$", path.read_text(), re.M)
        if not names or path.name == "_docs.py":
            continue
        assert set(names) <= set(docdict), path
        module = importlib.import_module(".".join(path.relative_to(root.parent).with_suffix("").parts))
        docs = [obj.__doc__ or "" for obj in vars(module).values()
                if callable(obj) and getattr(obj, "__module__", None) == module.__name__]
        assert not any("%(" in doc for doc in docs), f"{path}: a placeholder is left unfilled (missing @fill_doc?)"


def test_docstring_pointers_into_docs_name_existing_pages_and_sections():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pointer = re.compile(r'docs/(\w+\.md)`{0,2},?\s+"([^"]+)"')
    found = 0
    for path in sorted([*root.glob("niclip_ray/**/*.py"), *root.glob("benchmarks/*.py"), *root.glob("tests/**/*.py")]):
        for page, section in pointer.findall(path.read_text()):
            doc = root / "docs" / page
            assert doc.is_file(), f"{path}: docs/{page} does not exist"
            headings = re.findall(r"^#+ (.+)$", doc.read_text(), re.M)
            assert section in headings, f"{path}: docs/{page} has no section {section!r}"
            found += 1
    assert found >= 10


def test_no_pointer_to_documents_outside_the_repository():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    outside = ("DESIGN.md", "method notes", "niclip-method.md", "notes/ray-2.60.md", "notes/offline-data.md", "§")
    files = [*root.glob("niclip_ray/**/*.py"), *root.glob("benchmarks/*.py"), *root.glob("docs/*.md"),
             root / "README.md", root / "CONTRIBUTING.md"]
    for path in files:
        text = path.read_text()
        assert not [w for w in outside if w in text], path
