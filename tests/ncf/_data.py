"""A synthetic implicit dataset with a planted structure: users belong to clusters, each cluster
interacts mostly with its own block of items, every item is equally popular overall, so a model
must learn the user-item structure to beat popularity."""

import numpy as np

from fastrec.data.interactions import Interactions


def clustered_implicit(n_users=120, n_items=80, n_clusters=4, per_user=12, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    user_cluster = np.arange(n_users) % n_clusters
    item_cluster = np.arange(n_items) % n_clusters
    users, items = [], []
    for u in range(n_users):
        own = np.flatnonzero(item_cluster == user_cluster[u])
        n_noise = int(round(per_user * noise))
        chosen = np.concatenate([rng.choice(own, per_user - n_noise, replace=False),
                                 rng.choice(n_items, n_noise, replace=False)])
        chosen = np.unique(chosen)
        users.append(np.full(chosen.shape[0], u))
        items.append(rng.permutation(chosen))
    users, items = np.concatenate(users), np.concatenate(items)
    times = np.arange(users.shape[0])  # stored order is time order: the last pair is the latest
    return Interactions.from_ids(users, items, np.ones(users.shape[0]), timestamps=times)
