"""The base every stage stands on: config, errors, files, the run layout, stage results and the stage registry."""
