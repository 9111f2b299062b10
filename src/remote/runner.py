#!/usr/bin/env python3
"""maand's worker-side runner: see maand_runner.py beside this file for what it does.

Usage: python3 /opt/worker/<bucket_id>/bin/runner.py TARGET [JOB ...]
       python3 /opt/worker/<bucket_id>/bin/runner.py step DEPLOY KEY LIMIT [--apply JOB] -- PROGRAM [ARG ...]
"""

import sys

import maand_runner

sys.exit(maand_runner.main(sys.argv))
