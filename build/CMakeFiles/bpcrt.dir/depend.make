# Empty dependencies file for bpcrt.
# This may be replaced when dependencies are built.
