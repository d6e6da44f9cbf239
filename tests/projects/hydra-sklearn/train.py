"""Fit a classifier chosen by the Hydra config; log accuracy; save the model."""
import json
import logging
import pickle

import hydra
from omegaconf import DictConfig, OmegaConf
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)


def build(cfg):
    if cfg.model.name == "forest":
        return RandomForestClassifier(n_estimators=cfg.model.n_estimators,
                                      max_depth=cfg.model.max_depth, random_state=cfg.seed)
    return LogisticRegression(C=cfg.model.C, max_iter=cfg.model.max_iter)


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    X, y = make_classification(n_samples=cfg.data.n_samples, n_features=cfg.data.n_features,
                               n_informative=cfg.data.n_informative, random_state=cfg.seed)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=cfg.data.test_size,
                                                      random_state=cfg.seed)
    model = build(cfg).fit(X_train, y_train)
    train_acc, val_acc = model.score(X_train, y_train), model.score(X_val, y_val)
    log.info(f"train accuracy {train_acc:.4f} val accuracy {val_acc:.4f}")
    with open("model.pkl", "wb") as f:
        pickle.dump(model, f)
    with open("scores.json", "w") as f:
        json.dump({"train_accuracy": train_acc, "val_accuracy": val_acc}, f)
    return val_acc


if __name__ == "__main__":
    main()
