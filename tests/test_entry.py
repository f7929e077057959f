"""The entry points' checks before a run leave BasicSR's logger to the run, which logs to its file."""
import sys

from basicsr.utils import logger as basicsr_logger

from hoffr_arch._entry import prepare
from pipeline import read_logs, train_options


def test_the_checks_do_not_initialise_basicsr_logger(tmp_path, lmdb_data, monkeypatch):
    # BasicSR adds the run's log file only when its logger is first initialised: the checks
    # (network built, data read) must not be first
    monkeypatch.setenv('HOFFR_ROOT', str(tmp_path / 'root'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['train'])
    monkeypatch.delitem(basicsr_logger.initialized_logger, 'basicsr', raising=False)
    opt = train_options(tmp_path, lmdb_data, name='checked')
    assert prepare(['-opt', str(opt)], is_train=True) == str(tmp_path / 'root')
    assert 'basicsr' not in basicsr_logger.initialized_logger


def test_the_run_log_holds_the_network_and_dataset_lines(trained_run):
    log = read_logs(trained_run, 'cut')
    assert 'Network [HOFFR] is created.' in log
    assert 'tiny_train: 2 clips, 20 frames' in log
