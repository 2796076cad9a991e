"""``unlearn demo``: the end-to-end demo and its markdown report.

:mod:`unlearn.demo.report` runs the parts and writes the report; :mod:`unlearn.demo.policy`
is the shipped RL policy's part, :mod:`unlearn.demo.t2i` the text-to-image part.
"""

from unlearn.demo.policy import DEMO_DECAY, SHIPPED_POLICY, policy_section
from unlearn.demo.report import (
    DEFAULT_PARTS,
    DEMO_PARTS,
    DEMO_SAMPLES,
    DEMO_T2I_SAMPLES,
    DemoReport,
    eval_table,
    markdown_table,
    parse_parts,
    run_demo,
    write_report,
)
from unlearn.demo.t2i import T2I_DEMO_CONFIG, t2i_demo_config, t2i_section

__all__ = [
    "DEFAULT_PARTS",
    "DEMO_DECAY",
    "DEMO_PARTS",
    "DEMO_SAMPLES",
    "DEMO_T2I_SAMPLES",
    "SHIPPED_POLICY",
    "T2I_DEMO_CONFIG",
    "DemoReport",
    "eval_table",
    "markdown_table",
    "parse_parts",
    "policy_section",
    "run_demo",
    "t2i_demo_config",
    "t2i_section",
    "write_report",
]
