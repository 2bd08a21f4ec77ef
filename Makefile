# inrsr — set up, run the demo, run the tests. `make install` is implied by the others.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench bench-thickness exp register patient01 render-memory report-screenshots bids-cohort \
	gpu-check gpu-check-prepare gpu-check-rehearse eclare eclare-prepare eclare-rehearse clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned torch pulls gigabytes of CUDA packages
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,bids]'
	touch $(STAMP)

demo: install
	$(BIN)/inrsr demo -o demo_out --overwrite

test: install
	$(BIN)/python -m pytest -q -ra

# Speed/quality benchmark on the shared cases (35 min on 2 CPU cores with BENCH_ARGS="--protocols slab,point"); table in experiments/results/bench.md
# BENCH_ARGS passes more options, e.g. BENCH_ARGS="--device cuda --cases brats"
bench: install
	$(BIN)/python experiments/bench.py --out bench_out $(BENCH_ARGS)

# The fit told each slice thickness vs. the same stacks without sidecars (estimated): BraTS and MS
# pairs of two contrasts (also with a sagittal stack) and of one contrast in two views; and SMORE
# with its single-stack estimate (about 120 min on 2 CPU cores; resumable). Tables in
# experiments/results/thickness/bench.md and smore/results.md
bench-thickness: install
	$(BIN)/python experiments/bench.py --cases brats,msseg,brats_t2w,msseg_t1,brats_sag,msseg_sag \
		--protocols point,point-untold,slab,slab-untold,gap,gap-untold \
		--methods cubic,default --out bench_out --results experiments/results/thickness
	$(BIN)/python experiments/exp.py --cases brats,msseg --protocols slab,slab-untold,point-untold --methods cubic,smore \
		--out experiments/results/thickness/smore

# The paper's experiments: every method, case and protocol (about an hour on 2 CPU cores, resumable);
# tables and figures in experiments/results. EXP_FULL=1 gives the paper-network methods their full budget.
exp: install
	$(BIN)/python experiments/exp.py

# --register brought back from a known motion, three scenarios (about 36 min on 2 CPU cores)
register: install
	$(BIN)/python experiments/register.py --scenario same
	$(BIN)/python experiments/register.py --scenario cross
	$(BIN)/python experiments/register.py --scenario cross_ms

# Real clinical stacks (open_ms_raw/patient01), with and without --register, checked, drawn and their reports photographed (10-20 min)
patient01: install
	$(BIN)/python experiments/patient01.py

# The BIDS App on a small study made from the shared data: wall time without Dask, on one worker, on one worker per core (about 4 min)
bids-cohort: install
	$(BIN)/python experiments/bids_cohort.py

# Screenshots of the demo's report.html in a headless Chromium (after `make demo`; needs Debian's chromium)
report-screenshots: install
	mkdir -p experiments/results/report
	$(BIN)/python experiments/report_screenshots.py demo_out/fit/report.html experiments/results/report/demo --top --section support

# Peak memory of the largest render the memory budget admits (RENDER_MEMORY_GB, default: all available)
render-memory: install
	$(BIN)/python experiments/render_memory.py $(if $(RENDER_MEMORY_GB),--max-memory $(RENDER_MEMORY_GB))

# The GPU check, for a machine with CUDA and no network (experiments/gpu_check.py): the CUDA tests and the
# BraTS bench (cubic, fast, default, paper at its full budget) in one run under 10 minutes; results in $$OUT,
# else experiments/results/gpu. It uses the machine's own python3 and torch, and the wheels and data that
# gpu-check-prepare puts in .whl/ and .gpu_data/ (both ignored by git; copy them there).
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) experiments/gpu_check.py

# Run beforehand, on a machine with the shared data and a package registry: nibabel's wheel for the GPU machine's Python 3.12 and the BraTS volumes
gpu-check-prepare: install
	rm -f .whl/nibabel-*.whl && mkdir -p .whl .gpu_data/brats_gli_00001
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		-d .whl "nibabel==$$($(BIN)/python -c 'import nibabel; print(nibabel.__version__)')"
	install -m 644 "$${INRSR_DATA:-../shared/data}"/brats_gli_00001/t1c.nii.gz \
		"$${INRSR_DATA:-../shared/data}"/brats_gli_00001/t2w.nii.gz .gpu_data/brats_gli_00001/

# The same steps on the CPU (CUDA tests on the CPU, bench with cubic and fast only; about 10 minutes)
gpu-check-rehearse: install
	$(BIN)/python experiments/gpu_check.py --rehearse --out gpu_check_rehearsal

# ECLARE (GPL-3, run as a separate program) on the BraTS slab stacks at its default budget, with its own
# slice-profile estimate and with the true one (experiments/eclare.py), for a GPU machine like gpu-check;
# eclare-prepare adds its wheels in .whl/eclare/, eclare-rehearse tries it on the CPU with two steps per run.
eclare:
	$(GPU_PYTHON) experiments/eclare.py

eclare-prepare: gpu-check-prepare
	rm -rf .whl/eclare && mkdir -p .whl/eclare
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: -d .whl/eclare \
		eclare==1.0.1 radifox-utils==1.0.3 sigpy-lite==0.1.27 transforms3d==0.4.2

eclare-rehearse: install
	$(BIN)/python experiments/eclare.py --rehearse --out gpu_check_rehearsal/eclare

clean:
	rm -rf $(VENV) demo_out *.egg-info .pytest_cache gpu_check_rehearsal
