# Empty dependencies file for bpclib.
# This may be replaced when dependencies are built.
