"""Figures at fleet size: patterns grouped worst first, small multiples per TLS stack, text measured."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iotaudit.plots import MAX_ROWS, MIN_FONT_PT, REPORT_DPI, coverage_grid, coverage_heatmap, pin_risk_matrix, text_geometry
from iotaudit.reports.cells import PNG_MIN_FONT_PX, Png

VERDICTS = np.array(["broken", "at-risk", "covered", "not-applicable"])
PAGE_WIDTH_PX = 1150  # the report page's content width (body max-width 1200 px, less padding)


def fleet_coverage(profiles: int, chains: int = 12, *, families: int = 60, stacks: tuple[str, ...] = (),
                   seed: int = 3) -> pd.DataFrame:
    """A coverage frame: ``profiles`` profiles built from ``families`` verdict patterns over ``chains`` chains."""
    rng = np.random.default_rng(seed)
    patterns = rng.choice(4, size=(families, chains), p=[0.1, 0.1, 0.5, 0.3])
    rows = []
    for n in range(profiles):
        family = int(rng.integers(0, families))
        devices = int(1 + rng.zipf(1.5)) if n else 1
        for j in range(chains):
            verdict = VERDICTS[patterns[family, j]]
            rows.append({"profile": f"fw-family{family:03d}-build{n:05d}", "devices": min(devices, 500_000),
                         "host": f"lab-ats-{j % 6}.iot.region-{j // 6}.amazonaws.com", "port": 8883,
                         "key_type": "rsa" if j % 2 else "ec", "verdict": verdict,
                         **({"tls_stack": stacks[family % len(stacks)]} if stacks else {})})
    frame = pd.DataFrame(rows)
    frame.loc[frame["profile"] == frame["profile"].iloc[0], "verdict"] = "broken"  # one tiny broken profile
    return frame


@pytest.mark.parametrize("profiles", [300, 3000])
def test_heatmap_stays_legible_at_fleet_size(profiles: int):
    coverage = fleet_coverage(profiles, chains=14)  # a full panel: the narrowest cells
    figure = coverage_heatmap(coverage)
    geometry = text_geometry(figure)
    assert geometry.min_font_px >= MIN_FONT_PT * 100 / 72 >= 12
    assert geometry.clipped == 0 and geometry.overlapping == 0
    png = Image.open(io.BytesIO(Png.from_figure(figure).data))
    assert png.width <= PAGE_WIDTH_PX  # shown at 1:1 on the page: 12.5 px text stays 12.5 px
    assert float(png.text[PNG_MIN_FONT_PX]) >= 12
    rows = [len(ax.get_yticklabels()) for ax in figure.axes]
    assert max(rows) <= MAX_ROWS


def test_patterns_group_profiles_and_keep_every_device():
    coverage = fleet_coverage(3000)
    grid = coverage_grid(coverage)
    assert len(grid.patterns) <= 61  # 60 families (+ the one broken build)
    assert sum(len(m) for m in grid.patterns["members"]) == coverage["profile"].nunique()
    per_profile = coverage.drop_duplicates("profile")["devices"].sum()
    assert int(grid.patterns["devices"].sum()) == int(per_profile)


def test_worst_first_a_one_device_broken_profile_comes_before_large_covered_ones():
    coverage = fleet_coverage(300)
    grid = coverage_grid(coverage)
    worst = list(grid.patterns["worst"])
    assert worst == sorted(worst)
    tiny = coverage["profile"].iloc[0]
    position = next(i for i, members in enumerate(grid.patterns["members"]) if tiny in members)
    assert grid.patterns["worst"].iloc[position] == 0
    assert all(w == 0 for w in worst[:position])


def test_left_out_patterns_are_counted_on_the_figure():
    coverage = fleet_coverage(3000, families=200)
    figure = coverage_heatmap(coverage, max_rows=20)
    labels = " ".join(ax.get_xlabel() for ax in figure.axes)
    grid = coverage_grid(coverage)
    left = grid.patterns.iloc[20:]
    assert f"{len(left):,} more patterns ({sum(len(m) for m in left['members']):,} profiles, " \
           f"{int(left['devices'].sum()):,} devices) not drawn" in labels


def test_small_multiples_one_panel_per_tls_stack():
    stacks = ("openssl-3", "mbedtls-2.28", "esp-idf-bundle")
    coverage = fleet_coverage(300, stacks=stacks)
    figure = coverage_heatmap(coverage)
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert len(figure.axes) == len(stacks)
    assert {t.split(":")[0] for t in titles} == set(stacks)
    grid = coverage_grid(coverage)
    for key, members in zip(grid.patterns["key"], grid.patterns["members"], strict=True):
        assert set(coverage.loc[coverage["profile"].isin(members), "tls_stack"]) == {key}
    geometry = text_geometry(figure)
    assert geometry.min_font_px >= 12 and geometry.clipped == 0 and geometry.overlapping == 0


def test_more_chains_than_fit_continue_in_further_panels():
    coverage = fleet_coverage(300, chains=20)
    figure = coverage_heatmap(coverage, max_columns=14)
    assert len(figure.axes) == 2 and [len(ax.get_xticklabels()) for ax in figure.axes] == [14, 6]


def test_pin_matrix_groups_pins_with_the_same_outcome():
    rows = []
    for n in range(400):
        for scenario in ("leaf-rekey", "intermediate-change", "key-type-switch"):
            rows.append({"profile": f"fw-{n:04d}", "devices": 10, "pin": f"sha256/{n % 3}", "scenario": scenario,
                         "matches": True, "breaks": scenario != "leaf-rekey" and n % 3 == 0,
                         "set_breaks": scenario == "key-type-switch" and n % 3 == 0})
    figure = pin_risk_matrix(pd.DataFrame(rows))
    assert len(figure.axes[0].get_yticklabels()) == 2  # 400 pins, two outcomes
    assert figure.axes[0].get_yticklabels()[0].get_text().startswith("P1 fw-0000 · sha256/0 +133")
    geometry = text_geometry(figure)
    assert geometry.min_font_px >= 12 and geometry.overlapping == 0


def test_expiry_timeline_groups_profiles_that_break_alike_broken_first_and_counts_the_rest():
    from iotaudit.plots import expiry_timeline

    utc = lambda text: pd.Timestamp(text, tz="UTC")  # noqa: E731
    rng = np.random.default_rng(5)
    dates = [utc(f"{2027 + k}-06-30") for k in range(80)]
    rows = [{"profile": f"fw-{n:04d}", "devices": int(rng.integers(1, 50)), "state": "broken" if n % 50 == 0 else "breaks",
             "break_date": dates[n % 80], "firmware_break_date": dates[n % 80]} for n in range(300)]
    breaks = pd.DataFrame(rows)
    certs = pd.DataFrame({"subject_cn": ["leaf"], "role": ["leaf"], "not_after": [utc("2027-01-01")]})
    anchors = pd.DataFrame({"anchor_name": ["Root"], "anchor_sha256": ["ab"], "not_after": [utc("2038-01-17")]})
    cliff = pd.DataFrame({"date": [utc("2026-01-01")], "devices_losing": [0], "devices_connected": [10]})
    figure = expiry_timeline(certs, breaks, anchors, cliff, as_of=utc("2026-01-01").to_pydatetime(), max_bars=30)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels[0].startswith("fw-0000 +5 (")  # the six broken profiles, one bar, first
    assert len(labels) == 30
    shown_groups = 28  # 30 bars less the certificate and the anchor
    left_profiles = 300 - 6 - sum(int(label.split("+")[1].split(" ")[0]) + 1 if "+" in label else 1
                                  for label in labels[1:shown_groups])
    title = figure._suptitle.get_text()
    assert f"{81 - shown_groups} more firmware groups ({left_profiles} profiles" in title
    geometry = text_geometry(figure)
    assert geometry.min_font_px >= 12 and geometry.overlapping == 0


def test_per_stack_panels_of_the_sample_inventory_keep_their_labels_apart(lab_run):
    # The sample inventory spreads 21 profiles over nine stacks: nine stacked panels sharing their columns.
    # Before each panel had room for what it draws, constrained layout collapsed them (a UserWarning in
    # the rendered page) and every panel's rotated column labels ran into the next panel's cells.
    import iotaudit
    from iotaudit.inventory import load_inventory

    root = Path(__file__).resolve().parent.parent
    result = iotaudit.audit(lab_run, load_inventory(root / "data" / "sample_inventory.csv"))
    figure = coverage_heatmap(result.coverage)
    assert len(figure.axes) >= 5
    geometry = text_geometry(figure)  # draws the figure: warnings are errors in this suite
    assert geometry.overlapping == 0 and geometry.clipped == 0
    assert geometry.min_font_px >= MIN_FONT_PT * REPORT_DPI / 72.0 - 0.01


def test_text_chunks_are_added_to_a_saved_png_and_a_truncated_png_is_refused() -> None:
    from iotaudit.reports.cells import _with_text_chunks

    buffer = io.BytesIO()
    Image.new("RGB", (3, 2)).save(buffer, format="PNG")
    tagged = _with_text_chunks(buffer.getvalue(), {"iotaudit-x": "1.50"})
    image = Image.open(io.BytesIO(tagged))
    image.load()  # CRCs checked: a bad chunk raises here
    assert image.text == {"iotaudit-x": "1.50"} and image.size == (3, 2)
    with pytest.raises(ValueError, match="IEND"):
        _with_text_chunks(buffer.getvalue()[:-12], {"k": "v"})
