# closeloop: every target creates the environment it needs.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help env run test lint fmt clean prometheus chromium cjk-fonts kafkacat

help:
	@echo "make run   - start the whole system locally (broker, database, four services)"
	@echo "make test  - run the whole test suite"
	@echo "make lint  - ruff and mypy"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

env: $(VENV)/.synced

run: env
	$(PY) -m shared.tools.devstack run

# Installs Debian's package $(1) when run as root on Debian (as CI is), else says what to
# install; $(2) says who needs it, $(3) (optional) what else would do. Each target below
# decides for itself what "missing" is.
define apt_install
if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
  echo "installing Debian's $(1) package ($(2))"; \
  apt-get update -qq >/dev/null && \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(1) >/dev/null; \
else \
  echo "$(1) is missing: install Debian's $(1) package (apt-get install $(1))$(3); $(2)" >&2; \
fi
endef

# tests/deploy runs promtool and a real Prometheus server; the tests start the server
# themselves, on a free port.
prometheus:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
	  $(call apt_install,prometheus,promtool and the server for tests/deploy); \
	fi

# tests/e2e/test_survey_browser.py drives the survey page in Debian's chromium (through
# playwright, never a downloaded browser); CLOSELOOP_CHROMIUM points the tests at another
# chromium binary.
chromium:
	@if [ ! -x "$${CLOSELOOP_CHROMIUM:-/usr/bin/chromium}" ]; then \
	  $(call apt_install,chromium,a headless browser for tests/e2e, or set CLOSELOOP_CHROMIUM); \
	fi

# tests/e2e/test_report_browser.py reads insights' report page, Chinese included, in that
# chromium: fontconfig must offer a font for Chinese (Debian's fonts-noto-cjk), which
# matplotlib also measures the charts' Chinese labels with.
cjk-fonts:
	@if ! fc-list :lang=zh family 2>/dev/null | grep -q .; then \
	  $(call apt_install,fonts-noto-cjk,Chinese text on insights' report page and its charts); \
	fi

# tests/e2e/test_downstream_clients.py reads every topic with Debian's kafkacat (kcat, on
# librdkafka), as integrators' scripts do; CLOSELOOP_KAFKACAT points the tests at another
# kcat binary.
kafkacat:
	@if ! command -v "$${CLOSELOOP_KAFKACAT:-kcat}" >/dev/null && ! command -v kafkacat >/dev/null; then \
	  $(call apt_install,kafkacat,a librdkafka consumer for tests/e2e, or set CLOSELOOP_KAFKACAT); \
	fi

test: env prometheus chromium cjk-fonts kafkacat
	$(PY) -m pytest

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(TOOLS) .localstack .pytest_cache .mypy_cache .ruff_cache
