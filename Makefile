# alignjax: two commands do everything on a fresh clone.
#   make reproduce   every reproduction suite, quick CPU setting -> results/ (JOBS=2 suites at once)
#   make test        the default test suite (what CI runs)
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= results
SUITES ?= all
JOBS   ?= 2

.PHONY: reproduce test test-slow bench lock clean-venv atlas-paper

$(STAMP): requirements.lock pyproject.toml
	@set -e; \
	if [ ! -x $(VPY) ]; then \
	  py=$$(scripts/find-python.sh) || exit 1; \
	  echo "creating $(VENV) with $$py"; \
	  "$$py" -m venv $(VENV); \
	fi; \
	$(VPY) -m pip install -q --upgrade pip; \
	$(VPY) -m pip install -q -r requirements.lock; \
	$(VPY) -m pip install -q --no-deps -e .; \
	touch $(STAMP)

reproduce: $(STAMP)
	$(VENV)/bin/alignjax reproduce $(SUITES) --quick --out $(OUT) --overwrite --jobs $(JOBS)

test: $(STAMP)
	$(VPY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(VPY) -m pytest -q -m slow

atlas-paper: $(STAMP)  # regenerate papers/atlas.md from a full and a quick run of the atlas
	$(VENV)/bin/alignjax reproduce atlas --out $(OUT)/atlas-paper/full --overwrite
	$(VENV)/bin/alignjax reproduce atlas --quick --out $(OUT)/atlas-paper/quick --overwrite
	$(VPY) -m alignjax_experiments.atlas $(OUT)/atlas-paper/full/atlas $(OUT)/atlas-paper/quick/atlas papers/atlas.md
	mkdir -p papers/atlas_figures && cp $(OUT)/atlas-paper/full/atlas/ranking.png $(OUT)/atlas-paper/full/atlas/coverage.png $(OUT)/atlas-paper/full/atlas/games.png $(OUT)/atlas-paper/full/atlas/phase-*.png papers/atlas_figures/

bench: $(STAMP)
	$(VPY) benchmarks/run_all.py

lock: $(STAMP)
	@echo "# Exact pins: \`make\` installs from this file so that the numbers reproduce next year." > requirements.lock
	@echo "# Regenerate with \`make lock\` after changing pyproject.toml dependencies." >> requirements.lock
	$(VPY) -m pip freeze --exclude-editable | grep -v '^alignjax' >> requirements.lock

clean-venv:
	rm -rf $(VENV)
