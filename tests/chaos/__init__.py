"""The fault campaign (issue 20): a generated stream through one or two workers while a driver
kills workers and the broker, pauses workers and mixes partitioners; the outputs are judged
against `aftersale replay` of the input in the order the broker appended it.

    python -m tests.chaos.campaign --faults 50 --workers 2     # the long form (`make chaos`)

tests/e2e/test_chaos.py runs the short form. The campaign runs its own broker
(`deploy/local/stack` with STACK_DIR=.stack-chaos on ports 29092/29093/26379), so killing it
disturbs nothing else.
"""
