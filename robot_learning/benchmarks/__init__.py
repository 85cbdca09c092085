"""The field's benchmarks (Meta-World, PushT, ALOHA, robosuite) run from their own packages, each in its own cached
virtual environment, through the policy server: ``suites`` (what each installs, its tasks and published figures),
``venvs`` (create and cache a suite's venv), ``demos`` (expert episodes into the store), ``evaluate`` (serve + held-out
episodes), ``runner`` (end to end, the table). ``adapters/`` holds the scripts that run inside the suites' venvs
(``driver.py`` and one ``<suite>_suite.py`` each); they never import this package. docs/benchmark_suites.md."""
