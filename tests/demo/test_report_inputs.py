"""What the demo hands its report: the maps' titles and links, and the notes on the map counts."""

import pandas as pd

from niclip_ray.demo import MOTOR_MAP_ID, _map_titles, map_count_notes


def test_study_maps_link_to_neurostore_and_pubmed_where_a_pmid_exists():
    studies = pd.DataFrame({"title": ["An n-back study", ""], "pmid": ["12345", None]},
                           index=pd.Index(["25uKFzHufiGk", "2DMUS9MeRxqW"], name="study_id"))
    titles, links = _map_titles(studies, ["study-25uKFzHufiGk", "study-2DMUS9MeRxqW", "study-unknown"])
    assert titles["study-25uKFzHufiGk"] == "An n-back study" and titles["study-2DMUS9MeRxqW"] == "2DMUS9MeRxqW"
    record = "NeuroStore record (JSON)"
    assert list(links["study-25uKFzHufiGk"].items()) == [  # the web page first
        ("PubMed", "https://pubmed.ncbi.nlm.nih.gov/12345/"),
        (record, "https://neurostore.org/api/studies/25uKFzHufiGk")]
    assert links["study-2DMUS9MeRxqW"] == {record: "https://neurostore.org/api/studies/2DMUS9MeRxqW"}
    assert "study-unknown" not in links
    assert links[MOTOR_MAP_ID] == {"NeuroVault": "https://neurovault.org/images/10426/"}


def test_the_count_notes_carry_the_numbers_they_are_given():
    metrics, known = map_count_notes(n_scored=65, n_studies=64, n_labelled=63, n_retrieval=62)
    assert metrics.startswith("The metrics score 65 maps (64 held-out studies' MKDA maps and the NeuroVault motor map)")
    assert "the known-answer check scores 63 and the retrieval tables 62" in metrics
    assert known.startswith("63 maps: the held-out studies labelled n-back or flanker")
