"""Reading and writing: NIfTI images, input stacks, output files and folders."""
