"""The deployable stack: a CloudFormation template merged into `chalice package` output.

``build_template`` renders the merge template from the code's own definitions (models,
settings, the Chalice app's functions, ``policy.POLICIES``); ``checks`` verifies a packaged
template against the code; ``codescan`` derives, from the source, the AWS calls each Lambda
function can make.
"""
