"""Run every benchmark script in this folder with its default (full) settings."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for script in sorted(here.glob("*.py")):
    if script.name in ("run_all.py",) or script.name.startswith("_"):
        continue
    print(f"\n### {script.name}", flush=True)
    subprocess.run([sys.executable, str(script)], check=False)
