# Empty compiler generated dependencies file for test_interp.
# This may be replaced when dependencies are built.
