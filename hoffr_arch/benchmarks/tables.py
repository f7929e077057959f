"""Benchmark rows (dicts) as a Markdown table and as a CSV file."""
import csv


def markdown(rows, columns):
    """The lines of a Markdown table of ``rows``: ``columns`` [(header, format)], each format a
    ``str.format`` template over a row's keys (``'{psnr:.2f}'``)."""
    lines = ['| ' + ' | '.join(head for head, _ in columns) + ' |', '|' + '---|' * len(columns)]
    return lines + ['| ' + ' | '.join(fmt.format(**row) for _, fmt in columns) + ' |' for row in rows]


def write_csv(path, rows, fields):
    """``rows`` as the CSV file ``path``, the columns ``fields`` (other keys left out)."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows({k: row[k] for k in fields} for row in rows)
