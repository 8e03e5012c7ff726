import Notice from '../Notice.jsx';

/** Bring a part of the form into view and put the keyboard there. */
export function goTo(targetId) {
  const target = document.getElementById(targetId);
  if (!target) return;
  target.scrollIntoView?.({ behavior: 'smooth', block: 'center' });
  const focusable = target.matches('input, select, textarea, button')
    ? target
    : target.querySelector('[aria-invalid="true"]') || target.querySelector('input, select, textarea');
  (focusable || target).focus({ preventScroll: true });
}

/** "Before sending, please fix:" with one link per problem, each going to its place. */
export default function ProblemSummary({ problems, focusRef }) {
  if (!problems.length) return null;
  return (
    <Notice tone="error" title="Before sending, please fix:" id="form-problems" focusRef={focusRef}>
      <ul>
        {problems.map((problem) => (
          <li key={problem.key}>
            {problem.target ? (
              <a
                href={`#${problem.target}`}
                onClick={(event) => {
                  event.preventDefault();
                  goTo(problem.target);
                }}
              >
                {problem.text}
              </a>
            ) : (
              problem.text
            )}
          </li>
        ))}
      </ul>
    </Notice>
  );
}
