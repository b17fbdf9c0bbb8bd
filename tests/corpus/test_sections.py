"""Text sections: a column, or the title with its first keywords."""

import pandas as pd
import pytest

from niclip_ray.corpus.sections import KEYWORDS_IN_TEXT, section_texts, title_with_keywords
from niclip_ray.errors import ParameterError


def test_title_with_keywords():
    assert title_with_keywords("Working memory in n-back.", "n back, working memory, load") == (
        "Working memory in n-back. Keywords: n back, working memory, load.")
    assert title_with_keywords("A title", "") == "A title."
    assert title_with_keywords("", "reward") == "Keywords: reward."
    assert title_with_keywords("", "") == ""
    many = ", ".join(f"term{i}" for i in range(50))
    assert title_with_keywords("T", many).count("term") == KEYWORDS_IN_TEXT


def test_section_texts():
    studies = pd.DataFrame({"title": ["T1", "T2"], "keywords": ["a, b", ""], "abstract": ["x", "y"]})
    assert section_texts(studies, "abstract").tolist() == ["x", "y"]
    assert section_texts(studies, "title+keywords").tolist() == ["T1. Keywords: a, b.", "T2."]
    assert section_texts(studies.drop(columns="keywords"), "title+keywords").tolist() == ["T1.", "T2."]
    with pytest.raises(ParameterError, match="section must be one of"):
        section_texts(studies, "doi")
