// The progress page: polls GET /portal/status every second and fills the progress bar until the copy
// has ended, then shows the result and moves the focus to it.
'use strict';

(function progress() {
  const bar = document.getElementById('bar');
  const barText = document.getElementById('bar-text');
  const barBox = document.getElementById('progress-box');
  const status = document.getElementById('status');
  const from = document.getElementById('from');
  const heading = document.getElementById('heading');
  const result = document.getElementById('result');
  const resultTitle = document.getElementById('result-title');
  const resultText = document.getElementById('result-text');
  const resultMore = document.getElementById('result-more');
  const resultLink = document.getElementById('result-link');
  let lastQuarter = -1;
  let failures = 0;

  function announce(text) {
    if (status.textContent !== text) status.textContent = text;
  }

  function setBar(percent, written, total) {
    if (typeof percent === 'number') {
      bar.value = percent;
      bar.setAttribute('aria-valuetext', total ? `${percent}%: ${written} of about ${total} records` : `${percent}%`);
      barText.textContent = total ? `${percent}% (${written} of about ${total} records)` : `${percent}% (${written} records)`;
      const quarter = Math.floor(percent / 25);
      if (quarter !== lastQuarter && percent < 100) {
        lastQuarter = quarter;
        announce(`${percent}% copied.`);
      }
    } else {
      bar.removeAttribute('value'); // indeterminate
      bar.removeAttribute('aria-valuetext');
      barText.textContent = typeof written === 'number' && written > 0 ? `${written} records so far` : 'Starting…';
    }
  }

  function finish(kind, headline, title, text, more, linkText) {
    document.body.classList.add(`done-${kind}`);
    result.classList.add(kind === 'ok' ? 'notice-ok' : 'notice-error');
    heading.textContent = headline;
    resultTitle.textContent = title;
    resultText.textContent = text;
    resultMore.textContent = more;
    resultMore.hidden = !more;
    resultLink.textContent = linkText;
    result.hidden = false;
    document.title = title;
    announce('');
    result.focus();
  }

  function render(s) {
    if (s.plan) document.getElementById('plan-name').textContent = s.plan;
    const route = s.payer ? `From ${s.payer} to ${s.plan}.` : '';
    switch (s.state) {
      case 'completed':
        from.textContent = route;
        setBar(100, s.written, s.total);
        barText.textContent = `100% (${s.written} record${s.written === 1 ? '' : 's'})`;
        finish('ok', 'Your records have arrived', 'All done', s.message, `They are now part of your records at ${s.plan}.`, 'Back to the start');
        return true;
      case 'failed':
        from.textContent = route;
        if (typeof s.percent === 'number' || (typeof s.written === 'number' && s.written > 0)) setBar(s.percent, s.written, s.total);
        else barBox.hidden = true;
        finish('error', s.written > 0 ? 'Not all of your records were copied' : 'Your records were not copied',
          s.title || 'Nothing was copied', s.message, '', 'Try again');
        return true;
      case 'none':
        barBox.hidden = true;
        finish('error', 'Copying your health records', 'Nothing to show', 'You have not started copying records in this browser yet.', '', 'Start');
        return true;
      default:
        setBar(typeof s.percent === 'number' ? s.percent : null, s.written, s.total);
        from.textContent = s.message;
        return false;
    }
  }

  async function poll() {
    let done = false;
    try {
      const response = await fetch('/portal/status', { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      failures = 0;
      done = render(await response.json());
    } catch {
      failures += 1;
      if (failures === 3) announce('We cannot reach the server right now; still trying.');
    }
    if (!done) setTimeout(poll, 1000);
  }

  poll();
})();
