"""Learning library of the NBA service: policies, sampling, the VW wrapper,
experiment-arm assignment. It never imports the service (`decision`)."""
