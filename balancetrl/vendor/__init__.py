"""Code copied from dependencies whose private helpers balancetrl needs: a private name can change in any release,
a copy cannot. Each file keeps its upstream licence header and says where it came from."""
