"""The deploy tier: deploy.sh, the k8s manifests, compose and the Dockerfiles, checked by running bash,
shellcheck, kubectl kustomize and docker-compose as subprocesses (slower than tests/unit; ./scripts.sh test
collects them with the rest, `pytest tests/deploy` runs them alone)."""
