"""Plugins for the registry tests, loaded through real entry points.

Each module here (or object, for entry points of the form ``module:attr``) acts as one
plugin. The tests write ``*.dist-info`` folders whose ``entry_points.txt`` point at them.
"""
