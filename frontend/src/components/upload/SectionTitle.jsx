/** A numbered section heading of the upload page; the summary's links can move focus to it. */
export default function SectionTitle({ id, number, children }) {
  return (
    <h2 id={id} tabIndex={-1}>
      <span className="step-number" aria-hidden="true">{number}</span> {children}
    </h2>
  );
}
