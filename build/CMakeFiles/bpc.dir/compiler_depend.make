# Empty compiler generated dependencies file for bpc.
# This may be replaced when dependencies are built.
