"""What software each image on the node carries: package databases read from the image's own layers."""
