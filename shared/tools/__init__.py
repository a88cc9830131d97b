"""Development and operator tools: the `closeloop` command line, the local stack and the
load generator. No service imports these at run time."""
