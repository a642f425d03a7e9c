"""The release's pure parts: versions from a repository's tags, the product image's name,
labels and Dockerfile (checked or the stack's default), and the stack's default smoke check.

Nothing here talks to Docker: the image is built and run by sandbox/product.py, behind
the ProductImages protocol, and the company's release stage (company/deploy.py) ties
them together.
"""
