"""The release's pure parts: versions from a repository's tags, the product image's name,
labels and Dockerfile (checked or the stack's default), and the stack's default smoke check.

Nothing here talks to Docker or git itself, and nothing here imports more than the domain
models, so the Docker adapter (sandbox/product.py, sandbox/smoke.py, behind the
ProductImages protocol) can use the labels too. The company's release stage
(company/deploy.py) ties them together.
"""
