# Hydra configs of grud, shipped inside the wheel as the package ``grud.conf``.
