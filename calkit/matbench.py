"""The matbench composition regression tasks, declared once for the OOD benchmark.

Each task is a table of compositions and one property from Matbench v0.1 (Dunn et al., npj
Comput Mater 2020). calkit reads matbench's own composition artifacts (``scripts/artifacts`` of
github materialsproject/matbench, pinned to a commit and hash-checked), averages polymorphs to one
row per formula, as a composition model sees them (:func:`calkit.data.aggregate_formulas`), and
standardises the target on the training rows. :mod:`calkit.data` registers every task as the data
set ``matbench_<task>``; its OOD sets (:attr:`MatbenchTask.split_config`) are the paper's shifts
with both prior tails, plus chemistry hold-outs (:mod:`calkit.holdouts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from calkit import columns as col
from calkit.splits import SplitConfig

ARTIFACTS_URL = ("https://raw.githubusercontent.com/materialsproject/matbench/"
                 "936176db18ca4cd7b38cbd957c017a5bac770c6b/scripts/artifacts")
"""matbench's composition artifacts at the commit whose bytes the hashes below were taken from."""

TARGETED_SET = "prior_upper"
"""The set targeted CAL and fine-tuning are handed N rows of on each task: the high tail of the
target, one declared choice for every task (for the band gap, the moduli and the refractive index
it is the direction a screening looks for; for the formation and exfoliation energies it is not)."""
TARGETED_N = 64
"""N of the targeted comparison. Tasks whose high tail holds fewer than 4 N rows are left out, so
that at least three quarters of the set remain to score on."""

CLUSTER_K = 10
"""k of the k-means clustering whose most distinct cluster is held out."""
VALIDATION_SHARE = 0.2
"""Share of the in-distribution rows the five clean validation splits take on a benchmark task.

The mp2019 protocol sizes its training set like the paper's (about 44 % of the rows in no OOD
set); on tables of 312-9,723 formulas with seven shifts held out at once that would leave a few
dozen training rows on the smallest, so here the splits take a fifth of those rows."""


@dataclass(frozen=True)
class MatbenchTask:
    """One matbench composition regression task.

    Attributes:
        name: matbench's task name without the ``matbench_`` prefix (``"expt_gap"``).
        column: The target column of matbench's artifact.
        target: calkit's name of the target column.
        unit: Unit of the target.
        label: What the target is, for tables.
        sha256: sha256 of the artifact file.
        rows: Formulas after polymorphs are averaged.
        holdout_elements: The leave-one-element-out elements, chosen by
            :func:`calkit.holdouts.holdout_elements` on the formulas (a test checks the rule
            still gives them).
    """

    name: str
    column: str
    target: str
    unit: str
    label: str
    sha256: str
    rows: int
    holdout_elements: tuple[str, ...]

    @property
    def dataset(self) -> str:
        """The calkit data set name: ``matbench_<task>``."""
        return f"matbench_{self.name}"

    @property
    def file_key(self) -> str:
        """The key of the artifact in :data:`calkit.data.FILES`."""
        return f"matbench_artifact_{self.name}"

    @property
    def relpath(self) -> str:
        """Where the artifact lies below the data folder."""
        return f"sources/matbench_artifacts/matbench_{self.name}.json.bz2"

    @property
    def url(self) -> str:
        """The artifact's upstream URL (a pinned commit)."""
        return f"{ARTIFACTS_URL}/matbench_{self.name}.json.bz2"

    @property
    def split_config(self) -> SplitConfig:
        """How the task's OOD sets are built.

        The paper's covariate and extreme sets, both prior tails, the element hold-outs and one
        k-means cluster; clean validation splits of a fifth of the remaining rows.
        """
        return SplitConfig(prior_tail="both", element_holdouts=self.holdout_elements,
                           cluster_k=CLUSTER_K, validation_share=VALIDATION_SHARE)


TASKS: tuple[MatbenchTask, ...] = (
    MatbenchTask("expt_gap", "gap expt", "gap_expt", "eV", "experimental band gap",
                 "11d79ac6f2c25e23a136295e9bc37ea9ea4a9fa936c6bc366e777c1cb1c397b9", 4_604,
                 ("Te", "Cu", "Ga")),
    MatbenchTask("steels", "yield strength", "yield_strength", "MPa", "steel yield strength",
                 "f62ab2e43009e58bdeb3cb83637359e163e065caaf9fe309fab9bb8c7ad54aac", 312,
                 ("W",)),
    MatbenchTask("dielectric", "n", "refractive_index", "", "refractive index",
                 "828b3c40e350e146177e86fdf5812d409688fbedee29c84dea6aacb146a31d37", 3_992,
                 ("N", "P", "S")),
    MatbenchTask("log_gvrh", "log10(G_VRH)", "log10_g_vrh", "log10 GPa",
                 "shear modulus (log10 VRH)",
                 "4895201003e4da1592fe2bad4ba7c627f204e755fd929c43984b0ca5c6d34e40", 9_723,
                 ("Li", "Al", "Si")),
    MatbenchTask("log_kvrh", "log10(K_VRH)", "log10_k_vrh", "log10 GPa",
                 "bulk modulus (log10 VRH)",
                 "c61c243695d00ba290e1787b3a6c9d849a7da0b3f2339f847d1dfa173eec9d75", 9_723,
                 ("Li", "Al", "Si")),
    MatbenchTask("perovskites", "e_form", "e_form_perovskite", "eV per cell",
                 "perovskite formation energy",
                 "3c45312ebb0c6e5f7be4d1f2842c186d4906afbb3f8e80882f3c08bc3ba49f0a", 9_646,
                 ("Ag", "Al", "As")),
    MatbenchTask("jdft2d", "exfoliation_en", "exfoliation_energy", "meV/atom",
                 "exfoliation energy",
                 "57591e4c178800135bfb497246ddf4422a14fcde67f77187c66a28f9632ff20c", 568,
                 ("P", "Bi", "N")),
    MatbenchTask("phonons", "last phdos peak", col.PHDOS_PEAK, "cm^-1", "last phonon DOS peak",
                 "17ce45bd20aea96fa59d8adddb08abde59934033ba5446e7ffcc4df333331790", 1_171,
                 ("Cs", "S", "Li")),
)
"""The benchmark's tasks (matbench's composition regression tasks; mp_gap and mp_e_form, with
over 100,000 rows each, are left out of the CPU budget)."""

TASKS_BY_DATASET = {task.dataset: task for task in TASKS}

LEADERBOARD: dict[str, dict[str, float]] = {
    "expt_gap": {"CrabNet": 0.3463, "RF-SCM/Magpie": 0.4461, "Dummy (mean)": 1.1435},
    "steels": {"CrabNet": 107.316, "RF-SCM/Magpie": 103.5125, "Dummy (mean)": 229.7445},
    "dielectric": {"CrabNet": 0.3234, "RF-SCM/Magpie": 0.4196, "Dummy (mean)": 0.8088},
    "log_gvrh": {"CrabNet": 0.1014, "RF-SCM/Magpie": 0.104, "Dummy (mean)": 0.2931},
    "log_kvrh": {"CrabNet": 0.0758, "RF-SCM/Magpie": 0.082, "Dummy (mean)": 0.2897},
    "perovskites": {"CrabNet": 0.4065, "RF-SCM/Magpie": 0.2355, "Dummy (mean)": 0.566},
    "jdft2d": {"CrabNet": 45.6104, "RF-SCM/Magpie": 50.044, "Dummy (mean)": 67.2851},
    "phonons": {"CrabNet": 55.1114, "RF-SCM/Magpie": 67.6126, "Dummy (mean)": 323.9822},
}
"""matbench's own five-fold MAE (in the task's unit) of three entries, the in-distribution anchor
(the mean over the folds of matbench's results files, ``benchmarks/matbench_v0.1_<model>/
results.json.gz`` of github materialsproject/matbench at 936176db):
CrabNet (composition only), matbench's random forest (Magpie composition features, plus sine
Coulomb matrix structure features on the structure tasks: dielectric, log_gvrh, log_kvrh,
perovskites, jdft2d and phonons, so it sees more than a composition there) and the mean
predictor."""
