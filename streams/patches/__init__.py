"""Replacements of faust-streaming and aiokafka internals that the worker depends on."""
