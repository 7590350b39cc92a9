# The application's version, reported as `fw`. tools/release rewrites this module in the image it
# signs, so the version a board reports is the one its manifest named.
VERSION = "0.1.0"
