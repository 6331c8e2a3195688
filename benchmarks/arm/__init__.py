"""The ARM benchmark (issue 5, item 4): `python -m framegate.benchmarks.arm --json OUT.json`; see __main__."""
