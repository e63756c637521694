"""Runnable examples.

A regular package, not a namespace one: pysbd installs a top-level ``examples``
package that would otherwise shadow this directory.
"""
